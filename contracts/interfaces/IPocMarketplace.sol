// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IPocMarketplace
/// @notice Proof-of-contribution marketplace for federated learning. A project owner escrows a
/// reward budget; registered trainers submit one model update per round (its content identifier and
/// commitments); the project's aggregator posts each round's scores and outlier flags (checked by a
/// verifier when the project has one); the round's budget is credited pro rata to the non-outlier
/// trainers' positive scores; everyone withdraws what they are owed with pull payments.
/// @dev Money invariant, exact in wei:
/// `address(this).balance == sum(project.escrow) + sum(project.stakesHeld) + sum(credits)`.
/// A round opens when the previous one is settled (posted or failed); round 0 opens at `startTime`.
/// Round r accepts submissions in `[openedAt, openedAt + submissionWindow)` and results in
/// `[openedAt + submissionWindow, openedAt + submissionWindow + aggregationWindow)`.
interface IPocMarketplace {
    // ------------------------------------------------------------------------------------------
    // Types
    // ------------------------------------------------------------------------------------------

    /// @notice Who may register: anyone, or only addresses the owner allowed.
    enum RegistrationMode {
        Open,
        Allowlist
    }

    /// @notice Lifecycle of a project. `None` means the id does not exist.
    enum ProjectStatus {
        None,
        Active,
        Finished,
        Cancelled
    }

    /// @notice Why a project was cancelled.
    enum CancelReason {
        Owner,
        Undersubscribed,
        AggregatorTimeout
    }

    /// @notice Parameters fixed when a project is created.
    /// @param aggregator The only address allowed to post round results.
    /// @param verifier An `IRoundVerifier`; the zero address means results are not proven.
    /// @param startTime Registration closes and round 0 opens at this timestamp.
    /// @param numRounds Number of training rounds (at least 1).
    /// @param submissionWindow Seconds a round accepts submissions after it opens.
    /// @param aggregationWindow Seconds the aggregator has to post after the submission window.
    /// @param minTrainers Registered trainers needed for training to start.
    /// @param maxTrainers Registration cap.
    /// @param registrationMode Open, or only allowlisted addresses.
    /// @param stake Wei each trainer deposits when registering (refundable; 0 for none).
    /// @param validationSetCommitment Hash of the owner's validation set, revealed later for audits.
    /// @param initialModelCid Content identifier of the initial global model.
    struct ProjectParams {
        address aggregator;
        address verifier;
        uint64 startTime;
        uint32 numRounds;
        uint32 submissionWindow;
        uint32 aggregationWindow;
        uint32 minTrainers;
        uint32 maxTrainers;
        RegistrationMode registrationMode;
        uint128 stake;
        bytes32 validationSetCommitment;
        string initialModelCid;
    }

    /// @notice One trainer's submission as recorded by `submit`, echoed back by the aggregator.
    struct Submission {
        address trainer;
        bytes32 commitment;
        bytes32 featureCommitment;
    }

    /// @notice A round's results, posted by the aggregator.
    /// @param modelCid Content identifier of the new global model.
    /// @param reportHash Hash of the round report (inputs, rejections, scores, seeds, utilities).
    /// @param hyperparamsHash Hash of the hyper-parameters for the next round.
    /// @param submissions The round's submissions in submission order.
    /// @param scores One score per submission (fixed point, any scale; negative means harmful).
    /// @param outliers One flag per submission; outliers earn nothing.
    struct RoundPost {
        string modelCid;
        bytes32 reportHash;
        bytes32 hyperparamsHash;
        Submission[] submissions;
        int128[] scores;
        bool[] outliers;
    }

    /// @notice A project's parameters and current state, as returned by `getProject`.
    struct ProjectView {
        address owner;
        ProjectParams params;
        ProjectStatus status;
        uint128 budget;
        uint128 roundBudget;
        uint128 escrow;
        uint128 stakesHeld;
        uint32 trainerCount;
        uint32 currentRound;
        uint64 roundOpenedAt;
        uint64 submissionDeadline;
        uint64 aggregationDeadline;
        uint32 submissionCount;
        uint32 failedRounds;
        uint32 consecutiveFailures;
        bytes32 submissionsDigest;
        string modelCid;
    }

    /// @notice A trainer's state within one project.
    struct TrainerView {
        bool allowed;
        bool registered;
        bool stakeHeld;
        bool submittedCurrentRound;
    }

    // ------------------------------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------------------------------

    /// @notice The project id does not exist.
    error ProjectNotFound(uint256 projectId);
    /// @notice The call needs an active project.
    error ProjectNotActive(uint256 projectId, ProjectStatus status);
    /// @notice The call needs a finished or cancelled project.
    error ProjectNotEnded(uint256 projectId, ProjectStatus status);
    /// @notice No budget was sent with `createProject`.
    error ZeroBudget();
    /// @notice The budget does not fit 128 bits.
    error BudgetTooLarge(uint256 budget);
    /// @notice The aggregator address is zero.
    error ZeroAggregator();
    /// @notice The start time is not in the future.
    error StartTimeInPast(uint64 startTime, uint256 nowTimestamp);
    /// @notice The number of rounds is zero.
    error InvalidRounds(uint32 numRounds);
    /// @notice A window length is zero.
    error InvalidWindows(uint32 submissionWindow, uint32 aggregationWindow);
    /// @notice Round deadlines computed from this start time would not fit 64-bit timestamps.
    error ScheduleOverflow(uint64 startTime, uint32 submissionWindow, uint32 aggregationWindow);
    /// @notice Trainer bounds are inconsistent or above `MAX_TRAINERS`.
    error InvalidTrainerBounds(uint32 minTrainers, uint32 maxTrainers);
    /// @notice The caller is not the project owner.
    error NotOwner(uint256 projectId, address caller, address owner);
    /// @notice The caller is not the project aggregator.
    error NotAggregator(uint256 projectId, address caller, address aggregator);
    /// @notice Registration closed at `startTime`.
    error RegistrationClosed(uint256 projectId, uint64 startTime);
    /// @notice The project uses open registration; there is no allowlist to edit.
    error NotAllowlistMode(uint256 projectId);
    /// @notice The trainer is not on the project's allowlist.
    error NotAllowlisted(uint256 projectId, address trainer);
    /// @notice The trainer is already registered.
    error AlreadyRegistered(uint256 projectId, address trainer);
    /// @notice The project has `maxTrainers` registered trainers.
    error ProjectFull(uint256 projectId, uint32 maxTrainers);
    /// @notice The value sent is not the project's stake.
    error WrongStake(uint256 projectId, uint256 expected, uint256 sent);
    /// @notice The caller is not a registered trainer of the project.
    error NotRegistered(uint256 projectId, address trainer);
    /// @notice Training has not started: round 0 opens at `opensAt`.
    error RoundNotOpen(uint256 projectId, uint32 round, uint64 opensAt);
    /// @notice The round given is not the project's current round.
    error WrongRound(uint256 projectId, uint32 round, uint32 currentRound);
    /// @notice The submission arrived after the round's submission deadline.
    error SubmissionWindowClosed(uint256 projectId, uint32 round, uint64 deadline, uint256 nowTimestamp);
    /// @notice The trainer already submitted in this round.
    error AlreadySubmitted(uint256 projectId, uint32 round, address trainer);
    /// @notice The content identifier is empty or longer than `MAX_CID_LENGTH` bytes.
    error InvalidCid(uint256 length);
    /// @notice Fewer than `minTrainers` registered: training cannot start (the project can be cancelled).
    error NotEnoughTrainers(uint256 projectId, uint32 registered, uint32 minTrainers);
    /// @notice Results can only be posted after the submission window.
    error SubmissionWindowOpen(uint256 projectId, uint32 round, uint64 closesAt);
    /// @notice The aggregation window of the round has passed.
    error AggregationWindowClosed(uint256 projectId, uint32 round, uint64 deadline);
    /// @notice The round can only be failed after its aggregation deadline.
    error AggregationWindowOpen(uint256 projectId, uint32 round, uint64 deadline);
    /// @notice The posted submission list has the wrong length.
    error SubmissionCountMismatch(uint256 projectId, uint32 round, uint32 expected, uint256 given);
    /// @notice Scores and outlier flags must have one entry per submission.
    error LengthMismatch(uint256 submissions, uint256 scores, uint256 outliers);
    /// @notice The posted submissions differ from those recorded on chain.
    error SubmissionsMismatch(uint256 projectId, uint32 round, bytes32 expected, bytes32 computed);
    /// @notice The verifier rejected the round's proof, reverted, or gave no well-formed answer.
    error ProofRejected(uint256 projectId, uint32 round, address verifier);
    /// @notice The project cannot be cancelled now by this caller.
    error CannotCancel(uint256 projectId, address caller);
    /// @notice There is nothing to withdraw.
    error NothingToWithdraw(address account);
    /// @notice The trainer has no stake held in this project.
    error NoStakeHeld(uint256 projectId, address trainer);
    /// @notice Sending ether failed; the credit was kept.
    error TransferFailed(address to, uint256 amount);
    /// @notice The destination address is zero.
    error ZeroRecipient();
    /// @notice A withdrawal was re-entered while a transfer was in flight.
    error ReentrantCall();

    // ------------------------------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------------------------------

    /// @notice A project was created and its budget escrowed.
    event ProjectCreated(
        uint256 indexed projectId, address indexed owner, address indexed aggregator, uint256 budget, ProjectParams params
    );
    /// @notice The owner allowed a trainer to register (allowlist mode).
    event TrainerAllowed(uint256 indexed projectId, address indexed trainer);
    /// @notice A trainer registered, depositing `stake`.
    event TrainerRegistered(uint256 indexed projectId, address indexed trainer, uint256 stake);
    /// @notice A trainer left before training started; its stake was credited back.
    event TrainerLeft(uint256 indexed projectId, address indexed trainer, uint256 stakeCredited);
    /// @notice A round opened for submissions.
    event RoundOpened(
        uint256 indexed projectId, uint32 indexed round, uint64 openedAt, uint64 submissionDeadline, uint64 aggregationDeadline
    );
    /// @notice A trainer submitted its update for a round; `index` is its position in submission order.
    event UpdateSubmitted(
        uint256 indexed projectId,
        uint32 indexed round,
        address indexed trainer,
        uint32 index,
        string cid,
        bytes32 commitment,
        bytes32 featureCommitment,
        bytes32 submissionsDigest
    );
    /// @notice A trainer was credited for a round (amount may be zero for outliers and non-positive scores).
    event TrainerCredited(
        uint256 indexed projectId, uint32 indexed round, address indexed trainer, int128 score, bool outlier, uint256 amount
    );
    /// @notice The aggregator posted a round's results.
    event RoundPosted(
        uint256 indexed projectId,
        uint32 indexed round,
        string modelCid,
        bytes32 reportHash,
        bytes32 hyperparamsHash,
        uint256 credited,
        uint256 unallocated,
        bool proven
    );
    /// @notice A round passed its aggregation deadline without results; its budget stays in escrow.
    event RoundFailed(uint256 indexed projectId, uint32 indexed round, address indexed caller, uint32 consecutiveFailures);
    /// @notice The last round was settled.
    event ProjectFinished(uint256 indexed projectId);
    /// @notice The project was cancelled.
    event ProjectCancelled(uint256 indexed projectId, address indexed caller, CancelReason reason);
    /// @notice The owner withdrew the escrow nobody earned.
    event RemainingWithdrawn(uint256 indexed projectId, address indexed owner, address to, uint256 amount);
    /// @notice A trainer's stake was credited back after the project ended.
    event StakeReleased(uint256 indexed projectId, address indexed trainer, uint256 amount);
    /// @notice An account withdrew all its credits.
    event Claimed(address indexed account, address indexed to, uint256 amount);

    // ------------------------------------------------------------------------------------------
    // Owner
    // ------------------------------------------------------------------------------------------

    /// @notice Creates a project and escrows `msg.value` as its whole reward budget.
    /// @dev Each round's budget is `budget / numRounds`; the division remainder is never allocated.
    /// @param params The project's fixed parameters.
    /// @return projectId The new project's id (ids start at 1).
    function createProject(ProjectParams calldata params) external payable returns (uint256 projectId);

    /// @notice Adds trainers to the allowlist of an allowlist-mode project, before training starts.
    /// @param projectId The project.
    /// @param trainers Addresses allowed to register.
    function allowTrainers(uint256 projectId, address[] calldata trainers) external;

    /// @notice Cancels a project. The owner may cancel before `startTime`; anyone may cancel a project
    /// that reached `startTime` with fewer than `minTrainers` trainers before any round was settled.
    /// @dev The escrow then goes back to the owner through `withdrawRemaining`; stakes through `releaseStake`.
    /// @param projectId The project.
    function cancel(uint256 projectId) external;

    /// @notice Sends the owner the escrow nobody earned (failed rounds, dust, unspent rounds), once the
    /// project is finished or cancelled.
    /// @param projectId The project.
    /// @param to Where to send the ether.
    function withdrawRemaining(uint256 projectId, address payable to) external;

    // ------------------------------------------------------------------------------------------
    // Trainers
    // ------------------------------------------------------------------------------------------

    /// @notice Registers the caller as a trainer; `msg.value` must equal the project's stake.
    /// @param projectId The project.
    function register(uint256 projectId) external payable;

    /// @notice Unregisters the caller before training starts; its stake is credited back.
    /// @param projectId The project.
    function leave(uint256 projectId) external;

    /// @notice Submits the caller's update for the current round (once per round, before the deadline).
    /// @param projectId The project.
    /// @param round The round the update is for; must be the current round.
    /// @param cid Content identifier of the (possibly encrypted) update file.
    /// @param commitment Hash binding the plaintext update.
    /// @param featureCommitment Commitment to the update's feature vector (zero when not proven).
    function submit(uint256 projectId, uint32 round, string calldata cid, bytes32 commitment, bytes32 featureCommitment)
        external;

    /// @notice Credits the caller's stake back after the project ended.
    /// @param projectId The project.
    function releaseStake(uint256 projectId) external;

    /// @notice Withdraws everything the caller is owed, across all rounds and projects, to the caller.
    /// @return amount The wei sent.
    function claim() external returns (uint256 amount);

    /// @notice Withdraws everything the caller is owed to another address.
    /// @param to Where to send the ether.
    /// @return amount The wei sent.
    function claimTo(address payable to) external returns (uint256 amount);

    // ------------------------------------------------------------------------------------------
    // Aggregator and anyone
    // ------------------------------------------------------------------------------------------

    /// @notice Posts the current round's results (aggregator only, inside the aggregation window) and
    /// credits the round budget pro rata over `max(score, 0)` of non-outliers, rounding down.
    /// @param projectId The project.
    /// @param round The round; must be the current round.
    /// @param post The results; `post.submissions` must equal the recorded submissions in order.
    /// @param proof Proof bytes for the project's verifier (ignored when it has none).
    function postRound(uint256 projectId, uint32 round, RoundPost calldata post, bytes calldata proof) external;

    /// @notice Marks the current round failed once its aggregation deadline passed (anyone may call).
    /// The next round opens; after `MAX_CONSECUTIVE_FAILURES` failures in a row the project is cancelled.
    /// @param projectId The project.
    /// @param round The round; must be the current round.
    function failRound(uint256 projectId, uint32 round) external;

    // ------------------------------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------------------------------

    /// @notice Number of projects created so far (the highest id).
    function projectCount() external view returns (uint256);

    /// @notice A project's parameters and state.
    /// @param projectId The project.
    function getProject(uint256 projectId) external view returns (ProjectView memory);

    /// @notice A trainer's state within a project.
    /// @param projectId The project.
    /// @param trainer The trainer.
    function getTrainer(uint256 projectId, address trainer) external view returns (TrainerView memory);

    /// @notice Wei `account` can withdraw with `claim`.
    /// @param account The account.
    function credits(address account) external view returns (uint256);
}
