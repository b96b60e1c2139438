// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IPocMarketplace} from "./interfaces/IPocMarketplace.sol";
import {IRoundVerifier} from "./interfaces/IRoundVerifier.sol";

/// @title PocMarketplace
/// @notice Escrow, round bookkeeping and pull payments for proof-of-contribution federated learning.
/// One contract hosts many projects; `claim` withdraws a trainer's credits from all of them at once.
contract PocMarketplace is IPocMarketplace {
    /// @notice Most trainers a project may admit (bounds the gas of `postRound`).
    uint32 public constant MAX_TRAINERS = 512;
    /// @notice Longest content identifier accepted, in bytes.
    uint256 public constant MAX_CID_LENGTH = 128;
    /// @notice Failed rounds in a row after which a project is cancelled.
    uint32 public constant MAX_CONSECUTIVE_FAILURES = 2;

    struct Trainer {
        bool allowed;
        bool registered;
        bool stakeHeld;
        // Round index + 1 of the trainer's last submission; 0 = never submitted.
        uint32 lastSubmittedRoundPlusOne;
    }

    struct Project {
        // Slot: owner, status and counters read together by most calls.
        address owner;
        ProjectStatus status;
        uint32 trainerCount;
        uint32 failedRounds;
        uint8 consecutiveFailures;
        // Slot: the current round.
        uint32 currentRound;
        uint64 roundOpenedAt;
        uint32 submissionCount;
        // Slots: money.
        uint128 budget;
        uint128 escrow;
        uint128 stakesHeld;
        bytes32 submissionsDigest;
        string modelCid;
        ProjectParams params;
    }

    uint256 private _projectCount;
    mapping(uint256 projectId => Project) private _projects;
    mapping(uint256 projectId => mapping(address trainer => Trainer)) private _trainers;
    mapping(address account => uint256) private _credits;
    bool private transient _locked;

    modifier nonReentrant() {
        // Transient storage: the lock costs 200 gas and is cleared at the end of the transaction anyway.
        if (_locked) revert ReentrantCall();
        _locked = true;
        _;
        _locked = false;
    }

    // ------------------------------------------------------------------------------------------
    // Owner
    // ------------------------------------------------------------------------------------------

    /// @inheritdoc IPocMarketplace
    function createProject(ProjectParams calldata params) external payable returns (uint256 projectId) {
        if (msg.value == 0) revert ZeroBudget();
        if (msg.value > type(uint128).max) revert BudgetTooLarge(msg.value);
        if (params.aggregator == address(0)) revert ZeroAggregator();
        if (params.startTime <= block.timestamp) revert StartTimeInPast(params.startTime, block.timestamp);
        if (params.numRounds == 0) revert InvalidRounds(params.numRounds);
        if (params.submissionWindow == 0 || params.aggregationWindow == 0) {
            revert InvalidWindows(params.submissionWindow, params.aggregationWindow);
        }
        if (uint256(params.startTime) + params.submissionWindow + params.aggregationWindow > type(uint64).max) {
            revert ScheduleOverflow(params.startTime, params.submissionWindow, params.aggregationWindow);
        }
        if (params.minTrainers == 0 || params.minTrainers > params.maxTrainers || params.maxTrainers > MAX_TRAINERS) {
            revert InvalidTrainerBounds(params.minTrainers, params.maxTrainers);
        }
        uint256 cidLength = bytes(params.initialModelCid).length;
        if (cidLength == 0 || cidLength > MAX_CID_LENGTH) revert InvalidCid(cidLength);

        projectId = ++_projectCount;
        Project storage p = _projects[projectId];
        p.owner = msg.sender;
        p.status = ProjectStatus.Active;
        p.roundOpenedAt = params.startTime;
        p.budget = uint128(msg.value);
        p.escrow = uint128(msg.value);
        p.submissionsDigest = _roundSeed(projectId, 0);
        p.modelCid = params.initialModelCid;
        p.params = params;

        emit ProjectCreated(projectId, msg.sender, params.aggregator, msg.value, params);
        (uint64 subDeadline, uint64 aggDeadline) = _deadlines(p);
        emit RoundOpened(projectId, 0, params.startTime, subDeadline, aggDeadline);
    }

    /// @inheritdoc IPocMarketplace
    function allowTrainers(uint256 projectId, address[] calldata trainers) external {
        Project storage p = _activeProject(projectId);
        if (msg.sender != p.owner) revert NotOwner(projectId, msg.sender, p.owner);
        if (p.params.registrationMode != RegistrationMode.Allowlist) revert NotAllowlistMode(projectId);
        if (block.timestamp >= p.params.startTime) revert RegistrationClosed(projectId, p.params.startTime);
        for (uint256 i = 0; i < trainers.length; ++i) {
            _trainers[projectId][trainers[i]].allowed = true;
            emit TrainerAllowed(projectId, trainers[i]);
        }
    }

    /// @inheritdoc IPocMarketplace
    function cancel(uint256 projectId) external {
        Project storage p = _activeProject(projectId);
        CancelReason reason;
        if (block.timestamp < p.params.startTime) {
            if (msg.sender != p.owner) revert CannotCancel(projectId, msg.sender);
            reason = CancelReason.Owner;
        } else if (p.trainerCount < p.params.minTrainers && p.currentRound == 0) {
            // Training never started (every round-0 call reverts), so nobody has earned anything yet.
            reason = CancelReason.Undersubscribed;
        } else {
            revert CannotCancel(projectId, msg.sender);
        }
        p.status = ProjectStatus.Cancelled;
        emit ProjectCancelled(projectId, msg.sender, reason);
    }

    /// @inheritdoc IPocMarketplace
    function withdrawRemaining(uint256 projectId, address payable to) external nonReentrant {
        Project storage p = _existingProject(projectId);
        if (msg.sender != p.owner) revert NotOwner(projectId, msg.sender, p.owner);
        if (p.status == ProjectStatus.Active) revert ProjectNotEnded(projectId, p.status);
        if (to == address(0)) revert ZeroRecipient();
        uint256 amount = p.escrow;
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        p.escrow = 0;
        emit RemainingWithdrawn(projectId, msg.sender, to, amount);
        _send(to, amount);
    }

    // ------------------------------------------------------------------------------------------
    // Trainers
    // ------------------------------------------------------------------------------------------

    /// @inheritdoc IPocMarketplace
    function register(uint256 projectId) external payable {
        Project storage p = _activeProject(projectId);
        if (block.timestamp >= p.params.startTime) revert RegistrationClosed(projectId, p.params.startTime);
        Trainer storage t = _trainers[projectId][msg.sender];
        if (p.params.registrationMode == RegistrationMode.Allowlist && !t.allowed) {
            revert NotAllowlisted(projectId, msg.sender);
        }
        if (t.registered) revert AlreadyRegistered(projectId, msg.sender);
        if (p.trainerCount >= p.params.maxTrainers) revert ProjectFull(projectId, p.params.maxTrainers);
        if (msg.value != p.params.stake) revert WrongStake(projectId, p.params.stake, msg.value);

        t.registered = true;
        p.trainerCount += 1;
        if (msg.value > 0) {
            t.stakeHeld = true;
            // Cannot overflow: at most MAX_TRAINERS stakes of a uint128 each are held per project.
            p.stakesHeld += uint128(msg.value);
        }
        emit TrainerRegistered(projectId, msg.sender, msg.value);
    }

    /// @inheritdoc IPocMarketplace
    function leave(uint256 projectId) external {
        Project storage p = _activeProject(projectId);
        if (block.timestamp >= p.params.startTime) revert RegistrationClosed(projectId, p.params.startTime);
        Trainer storage t = _trainers[projectId][msg.sender];
        if (!t.registered) revert NotRegistered(projectId, msg.sender);

        t.registered = false;
        p.trainerCount -= 1;
        uint256 refund = _releaseStake(p, t, msg.sender);
        emit TrainerLeft(projectId, msg.sender, refund);
    }

    /// @inheritdoc IPocMarketplace
    function submit(uint256 projectId, uint32 round, string calldata cid, bytes32 commitment, bytes32 featureCommitment)
        external
    {
        Project storage p = _activeProject(projectId);
        Trainer storage t = _trainers[projectId][msg.sender];
        if (!t.registered) revert NotRegistered(projectId, msg.sender);
        _requireCurrentRound(projectId, p, round);
        (uint64 subDeadline,) = _deadlines(p);
        if (block.timestamp >= subDeadline) {
            revert SubmissionWindowClosed(projectId, round, subDeadline, block.timestamp);
        }
        if (t.lastSubmittedRoundPlusOne == round + 1) revert AlreadySubmitted(projectId, round, msg.sender);
        if (bytes(cid).length == 0 || bytes(cid).length > MAX_CID_LENGTH) revert InvalidCid(bytes(cid).length);

        t.lastSubmittedRoundPlusOne = round + 1;
        uint32 index = p.submissionCount;
        p.submissionCount = index + 1;
        bytes32 digest = _chain(p.submissionsDigest, msg.sender, commitment, featureCommitment);
        p.submissionsDigest = digest;
        emit UpdateSubmitted(projectId, round, msg.sender, index, cid, commitment, featureCommitment, digest);
    }

    /// @inheritdoc IPocMarketplace
    function releaseStake(uint256 projectId) external {
        Project storage p = _existingProject(projectId);
        if (p.status == ProjectStatus.Active) revert ProjectNotEnded(projectId, p.status);
        Trainer storage t = _trainers[projectId][msg.sender];
        if (!t.stakeHeld) revert NoStakeHeld(projectId, msg.sender);
        uint256 amount = _releaseStake(p, t, msg.sender);
        emit StakeReleased(projectId, msg.sender, amount);
    }

    /// @inheritdoc IPocMarketplace
    function claim() external nonReentrant returns (uint256 amount) {
        amount = _claim(payable(msg.sender));
    }

    /// @inheritdoc IPocMarketplace
    function claimTo(address payable to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert ZeroRecipient();
        amount = _claim(to);
    }

    // ------------------------------------------------------------------------------------------
    // Aggregator and anyone
    // ------------------------------------------------------------------------------------------

    /// @inheritdoc IPocMarketplace
    function postRound(uint256 projectId, uint32 round, RoundPost calldata post, bytes calldata proof) external {
        Project storage p = _activeProject(projectId);
        _checkPost(projectId, p, round, post);
        bool proven = _verify(projectId, p, round, post, proof);

        // Effects: pro-rata credit of the round budget over max(score, 0) of non-outliers.
        uint256 roundBudget = _roundBudget(p);
        uint256 credited = _credit(projectId, round, roundBudget, post);
        // credited <= roundBudget <= escrow: each round spends at most budget / numRounds.
        p.escrow -= uint128(credited);
        p.consecutiveFailures = 0;
        p.modelCid = post.modelCid;
        emit RoundPosted(
            projectId,
            round,
            post.modelCid,
            post.reportHash,
            post.hyperparamsHash,
            credited,
            roundBudget - credited,
            proven
        );
        _advance(projectId, p);
    }

    /// @inheritdoc IPocMarketplace
    function failRound(uint256 projectId, uint32 round) external {
        Project storage p = _activeProject(projectId);
        _requireCurrentRound(projectId, p, round);
        (, uint64 aggDeadline) = _deadlines(p);
        if (block.timestamp < aggDeadline) revert AggregationWindowOpen(projectId, round, aggDeadline);

        p.failedRounds += 1;
        p.consecutiveFailures += 1;
        emit RoundFailed(projectId, round, msg.sender, p.consecutiveFailures);
        if (p.consecutiveFailures >= MAX_CONSECUTIVE_FAILURES && round + 1 < p.params.numRounds) {
            p.status = ProjectStatus.Cancelled;
            emit ProjectCancelled(projectId, msg.sender, CancelReason.AggregatorTimeout);
        } else {
            _advance(projectId, p);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /// @inheritdoc IPocMarketplace
    function projectCount() external view returns (uint256) {
        return _projectCount;
    }

    /// @inheritdoc IPocMarketplace
    function getProject(uint256 projectId) external view returns (ProjectView memory v) {
        Project storage p = _existingProject(projectId);
        (uint64 subDeadline, uint64 aggDeadline) = _deadlines(p);
        v.owner = p.owner;
        v.params = p.params;
        v.status = p.status;
        v.budget = p.budget;
        v.roundBudget = uint128(_roundBudget(p));
        v.escrow = p.escrow;
        v.stakesHeld = p.stakesHeld;
        v.trainerCount = p.trainerCount;
        v.currentRound = p.currentRound;
        v.roundOpenedAt = p.roundOpenedAt;
        v.submissionDeadline = subDeadline;
        v.aggregationDeadline = aggDeadline;
        v.submissionCount = p.submissionCount;
        v.failedRounds = p.failedRounds;
        v.consecutiveFailures = p.consecutiveFailures;
        v.submissionsDigest = p.submissionsDigest;
        v.modelCid = p.modelCid;
    }

    /// @inheritdoc IPocMarketplace
    function getTrainer(uint256 projectId, address trainer) external view returns (TrainerView memory v) {
        Project storage p = _existingProject(projectId);
        Trainer storage t = _trainers[projectId][trainer];
        v.allowed = t.allowed;
        v.registered = t.registered;
        v.stakeHeld = t.stakeHeld;
        v.submittedCurrentRound = t.lastSubmittedRoundPlusOne == p.currentRound + 1;
    }

    /// @inheritdoc IPocMarketplace
    function credits(address account) external view returns (uint256) {
        return _credits[account];
    }

    // ------------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------------

    function _existingProject(uint256 projectId) private view returns (Project storage p) {
        p = _projects[projectId];
        if (p.status == ProjectStatus.None) revert ProjectNotFound(projectId);
    }

    function _activeProject(uint256 projectId) private view returns (Project storage p) {
        p = _existingProject(projectId);
        if (p.status != ProjectStatus.Active) revert ProjectNotActive(projectId, p.status);
    }

    /// @dev Shared checks of submit/post/fail: training started, enough trainers, the right round.
    function _requireCurrentRound(uint256 projectId, Project storage p, uint32 round) private view {
        if (block.timestamp < p.params.startTime) revert RoundNotOpen(projectId, round, p.params.startTime);
        if (p.trainerCount < p.params.minTrainers) {
            revert NotEnoughTrainers(projectId, p.trainerCount, p.params.minTrainers);
        }
        if (round != p.currentRound) revert WrongRound(projectId, round, p.currentRound);
    }

    /// @dev Caller, round, timing, shape and submission-list checks of `postRound`.
    function _checkPost(uint256 projectId, Project storage p, uint32 round, RoundPost calldata post) private view {
        address aggregator = p.params.aggregator;
        if (msg.sender != aggregator) revert NotAggregator(projectId, msg.sender, aggregator);
        _requireCurrentRound(projectId, p, round);
        (uint64 subDeadline, uint64 aggDeadline) = _deadlines(p);
        if (block.timestamp < subDeadline) revert SubmissionWindowOpen(projectId, round, subDeadline);
        if (block.timestamp >= aggDeadline) revert AggregationWindowClosed(projectId, round, aggDeadline);

        uint256 n = post.submissions.length;
        if (n != p.submissionCount) revert SubmissionCountMismatch(projectId, round, p.submissionCount, n);
        if (post.scores.length != n || post.outliers.length != n) {
            revert LengthMismatch(n, post.scores.length, post.outliers.length);
        }
        uint256 cidLength = bytes(post.modelCid).length;
        if (cidLength == 0 || cidLength > MAX_CID_LENGTH) revert InvalidCid(cidLength);

        bytes32 digest = _roundSeed(projectId, round);
        for (uint256 i = 0; i < n; ++i) {
            Submission calldata s = post.submissions[i];
            digest = _chain(digest, s.trainer, s.commitment, s.featureCommitment);
        }
        if (digest != p.submissionsDigest) revert SubmissionsMismatch(projectId, round, p.submissionsDigest, digest);
    }

    /// @dev Asks the project's verifier, if any, to check the proof; returns whether a proof was checked.
    function _verify(uint256 projectId, Project storage p, uint32 round, RoundPost calldata post, bytes calldata proof)
        private
        view
        returns (bool)
    {
        address verifier = p.params.verifier;
        if (verifier == address(0)) return false;
        // Low-level call rather than try/catch: try/catch does not catch a failure to decode the answer,
        // so a verifier without code (or one returning nothing) would revert postRound with empty data.
        // Anything but a well-formed `true` is a rejection.
        (bool success, bytes memory answer) = verifier.staticcall(
            abi.encodeCall(IRoundVerifier.verifyRound, (projectId, round, p.submissionsDigest, post, proof))
        );
        if (!success || answer.length < 32 || abi.decode(answer, (uint256)) != 1) {
            revert ProofRejected(projectId, round, verifier);
        }
        return true;
    }

    /// @dev Credits each submitter its share of `roundBudget`; returns the total credited.
    function _credit(uint256 projectId, uint32 round, uint256 roundBudget, RoundPost calldata post)
        private
        returns (uint256 credited)
    {
        uint256 n = post.scores.length;
        uint256 total = 0;
        for (uint256 i = 0; i < n; ++i) {
            total += _weight(post.scores[i], post.outliers[i]);
        }
        for (uint256 i = 0; i < n; ++i) {
            uint256 w = _weight(post.scores[i], post.outliers[i]);
            // roundBudget < 2**128 and w < 2**127, so the product fits 256 bits.
            uint256 share = total == 0 ? 0 : (roundBudget * w) / total;
            address trainer = post.submissions[i].trainer;
            if (share > 0) {
                _credits[trainer] += share;
                credited += share;
            }
            emit TrainerCredited(projectId, round, trainer, post.scores[i], post.outliers[i], share);
        }
    }

    function _deadlines(Project storage p) private view returns (uint64 subDeadline, uint64 aggDeadline) {
        subDeadline = p.roundOpenedAt + p.params.submissionWindow;
        aggDeadline = subDeadline + p.params.aggregationWindow;
    }

    function _roundBudget(Project storage p) private view returns (uint256) {
        return p.budget / p.params.numRounds;
    }

    function _weight(int128 score, bool outlier) private pure returns (uint256) {
        return (outlier || score <= 0) ? 0 : uint256(uint128(score));
    }

    function _roundSeed(uint256 projectId, uint32 round) private view returns (bytes32) {
        // Domain-separated per chain, contract, project and round so a digest (and any proof over it)
        // cannot be replayed elsewhere.
        return keccak256(abi.encode(block.chainid, address(this), projectId, round));
    }

    function _chain(bytes32 digest, address trainer, bytes32 commitment, bytes32 featureCommitment)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(digest, trainer, commitment, featureCommitment));
    }

    /// @dev Settles the current round: opens the next one, or finishes the project after the last.
    function _advance(uint256 projectId, Project storage p) private {
        uint32 next = p.currentRound + 1;
        if (next >= p.params.numRounds) {
            p.status = ProjectStatus.Finished;
            emit ProjectFinished(projectId);
            return;
        }
        p.currentRound = next;
        p.roundOpenedAt = uint64(block.timestamp);
        p.submissionCount = 0;
        p.submissionsDigest = _roundSeed(projectId, next);
        (uint64 subDeadline, uint64 aggDeadline) = _deadlines(p);
        emit RoundOpened(projectId, next, uint64(block.timestamp), subDeadline, aggDeadline);
    }

    function _releaseStake(Project storage p, Trainer storage t, address trainer) private returns (uint256 amount) {
        if (!t.stakeHeld) return 0;
        amount = p.params.stake;
        t.stakeHeld = false;
        p.stakesHeld -= uint128(amount);
        _credits[trainer] += amount;
    }

    function _claim(address payable to) private returns (uint256 amount) {
        amount = _credits[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _credits[msg.sender] = 0;
        emit Claimed(msg.sender, to, amount);
        _send(to, amount);
    }

    function _send(address payable to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
